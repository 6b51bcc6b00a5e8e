"""``QR_*`` settings: the base class every source's settings derive from, core's
own configuration, and the per-request options a request may override."""
