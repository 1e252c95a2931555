import struct
import logic

# A device packs each reading into 5 bytes: id (uint16), temperature x 100 (int16), humidity (uint8).
FRAME = ">HhB"


def main(event):
    """Decode a base64 binary frame from a device into JSON."""
    raw = logic.encoding.base64_decode(event.data)
    sensor_id, centi_c, humidity = struct.unpack(FRAME, raw)
    reading = {"id": sensor_id, "temperature_c": centi_c / 100, "humidity_pct": humidity}
    logic.publish("sensor-decoded", reading)
    return reading
