"""Qdrant's filter language and the values it compares.

Owns: conditions.py (filter types and their compiled matchers; the classes a WAL record
names by class name), engine/filters/payload_path.py (JsonPath into payloads), engine/filters/instants.py (datetimes),
engine/filters/geo.py, engine/filters/siphash.py, engine/filters/text_match.py (full-text matching through a text index's tokenizer).
May import: engine base modules only.
"""
