"""The review panel: Django's admin over conversations, usage and prices, its charts and its
exports."""
