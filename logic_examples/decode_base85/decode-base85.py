import json
import zlib
import logic


def main(event):
    """Decode a compressed JSON batch sent as base85 (denser than base64 for small payloads)."""
    packed = logic.encoding.base85_decode(event.data)
    batch = json.loads(logic.encoding.bytes_to_str(zlib.decompress(packed)))
    temps = [r["t"] for r in batch]
    summary = {"count": len(batch), "min": min(temps), "max": max(temps),
               "mean": round(sum(temps) / len(temps), 2)}
    logic.publish("batch-summary", summary)
    return summary
