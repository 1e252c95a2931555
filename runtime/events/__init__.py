"""Durable events: publish, deliver, schedule (parent side, in `logic serve`).

    rules       check_event: name and data limits, hook prefixes, chain depth
    bus         EventBus: commit an event and one delivery per matching target
    doorbell    Doorbell: wakes one waiting delivery thread per ring
    dispatcher  Dispatcher: threads that claim deliveries and carry them out
    cron        normalize_cron, next_fire: schedule expressions and their ticks
    scheduler   Scheduler: fires each tick of each schedule trigger once

The queue itself (events, deliveries, leases) is `store.events.EventStore`.
"""
