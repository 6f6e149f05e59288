"""WeCom's server API under /cgi-bin/: real paths, real JSON shapes, WeCom's error codes.

``dispatch`` is the one catch-all route and the table of every simulated API; each other module
parses, checks and renders one WeCom area (tickets, directory, contacts, messages, groupmsg,
tags, contact_ways, transfers, media), calling SimState for the rules; ``call`` holds what every
handler takes and the parameter parsers.
"""
