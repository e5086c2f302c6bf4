"""What sends a session's requests: the `Transport` protocol and the aiohttp transport (the one module that imports aiohttp)."""
