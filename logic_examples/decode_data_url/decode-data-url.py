import json
import logic


def main(event):
    """Accept a data URL (e.g. from a browser upload) and publish its JSON content."""
    mime = logic.encoding.data_url_mime_type(event.data)
    body = logic.encoding.data_url_decode(event.data)
    if mime != "application/json":
        logic.log.warning("ignoring", mime)
        return {"accepted": False, "mime_type": mime}
    config = json.loads(logic.encoding.bytes_to_str(body))
    logic.publish("config-received", config)
    return {"accepted": True, "mime_type": mime, "keys": sorted(config)}
