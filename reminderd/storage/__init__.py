"""Everything that knows Redis: every name (``names``), the record codec, the store and its
Lua scripts, the rate limit, server facts (notify flags, doctor, identity), presence, the
connection and the embedded server.
"""
