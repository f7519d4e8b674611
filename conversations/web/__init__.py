"""The site's pages and the small JSON endpoints its scripts call: thin views over
selectors and services, every object reached through an `access_*` selector."""
