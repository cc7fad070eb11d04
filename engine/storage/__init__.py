"""The recording file: schema, row codecs, the SQLite recorder (a sink) and the reader."""
