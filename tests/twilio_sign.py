"""Sign Twilio webhook requests for tests/server.rs with Twilio's own RequestValidator.

Reads JSON lines from stdin, each {"token": ..., "url": ..., "params": [[name, value], ...]},
and prints one base64 X-Twilio-Signature per line. Requires tests/requirements.txt
(`python3 -m pip install -r tests/requirements.txt`).
"""
import json
import sys

try:
    from twilio.request_validator import RequestValidator
except ImportError:
    sys.stderr.write(
        "the `twilio` Python package is missing: run "
        "`python3 -m pip install -r tests/requirements.txt`\n"
    )
    sys.exit(3)

for line in sys.stdin:
    if not line.strip():
        continue
    req = json.loads(line)
    params = {k: v for k, v in req["params"]}
    v = RequestValidator(req["token"])
    sig = v.compute_signature(req["url"], params)
    # Cross-check: the validator accepts what it computed.
    assert v.validate(req["url"], params, sig)
    print(sig)
