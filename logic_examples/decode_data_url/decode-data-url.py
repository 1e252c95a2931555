import json
import logic


def main(event):
    """Accept a data URL (e.g. from a browser upload) and publish its JSON content."""
    upload = logic.data_url_decode(event.data)  # Particle's dataUrlDecode: mime type, parameters, data
    if upload.mime_type != "application/json":
        logic.log.warning("ignoring", upload.mime_type)
        return {"accepted": False, "mime_type": upload.mime_type}
    config = json.loads(logic.encoding.bytes_to_str(upload.data))
    logic.publish("config-received", config)
    return {"accepted": True, "mime_type": upload.mime_type, "keys": sorted(config)}
