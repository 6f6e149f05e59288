"""Every HTTP face of guidebot, above the domains: the WeCom callback (callback, passive_reply),
health, tracked links (links), the guide's sidebar (sidebar/), the JSON API (api/) and the admin
pages (pages), with who is asking (auth, accounts, revoked, throttle), request limits (limits)
and what the server starts beside serving (startup). The domains never import this package."""
