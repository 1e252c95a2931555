import logic


def main(scheduled, function_info):
    """Every five minutes: publish a heartbeat naming the tick it belongs to."""
    beat = {"function": function_info.name, "version": function_info.version,
            "tick": scheduled.scheduled_at, "cron": scheduled.cron}
    logic.publish("heartbeat", beat)
    return beat
