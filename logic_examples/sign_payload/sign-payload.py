import hashlib
import hmac
import json
import logic


def main(event, secrets):
    """Sign a reading with HMAC-SHA256 under a shared key and publish it for a webhook.

    The receiver verifies the signature with the same key; the key itself never leaves.
    """
    reading = json.loads(event.data)
    body = json.dumps(reading, sort_keys=True, separators=(",", ":"))
    key = secrets.SIGNING_KEY
    signature = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    logic.publish("signed/reading", {"body": body, "signature": signature})
    return {"signed": True, "bytes": len(body)}
