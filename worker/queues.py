"""Queue names, highest priority first. Support and billing never wait behind the sweep."""

PRIORITY_QUEUE = "recon_priority"
WEBHOOK_QUEUE = "recon_webhooks"
SWEEP_QUEUE = "recon_sweep"
#: Order events out to the billing backend: their own queue, so a slow endpoint never delays our intake.
EVENTS_QUEUE = "recon_events"
QUEUES = (PRIORITY_QUEUE, WEBHOOK_QUEUE, EVENTS_QUEUE, SWEEP_QUEUE)
