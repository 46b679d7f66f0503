"""Queue names, highest priority first. Support and billing never wait behind the sweep."""

PRIORITY_QUEUE = "recon_priority"
WEBHOOK_QUEUE = "recon_webhooks"
SWEEP_QUEUE = "recon_sweep"
QUEUES = (PRIORITY_QUEUE, WEBHOOK_QUEUE, SWEEP_QUEUE)
