"""Redis storage: keys, codecs, user/event stores, and the local redis-server the project starts."""
