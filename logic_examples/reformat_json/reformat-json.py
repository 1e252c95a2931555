import json
import logic


def main(event):
    """Rename a device's terse JSON fields and publish the tidy version."""
    reading = json.loads(event.data)
    logic.log.info("reading", reading["i"], "from", event.source)
    tidy = {
        "id": reading["i"],
        "temperature_c": round(reading["t"], 1),
        "humidity_pct": reading.get("h"),
        "received_at": event.published_at,
    }
    logic.publish("data-reformatted", tidy)
    return tidy
