"""The county emergency broadcast platform (应急广播平台) over its HTTP JSON interface: BroadcastPlatformChannel."""
