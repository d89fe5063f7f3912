//! sms (in progress)
