"""The event contract (v1) as pydantic models, and the JSON Schema files made from them."""
