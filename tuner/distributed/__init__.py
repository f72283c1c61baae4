"""Many workers on one study: ``worker`` (joins a study, survives database hiccups),
``launch`` (N local workers pinned to GPUs)."""
