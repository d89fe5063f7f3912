//! Renderers of diagnostics (in progress).
