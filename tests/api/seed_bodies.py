"""The curl bodies of Qdrant's "upsert points" documentation page (the seed of this project),
byte for byte."""

SEED_SINGLE = """{
    "points": [
      {
        "id": 1,
        "vector": [0.05, 0.61, 0.76, 0.74],
        "payload": {
          "city": "Berlin",
          "country": "Germany",
          "population": 3645000,
          "year": 2023
        }
      }
    ]
  }"""
SEED_MULTIPLE = """{
    "points": [
      {
        "id": 1,
        "vector": [0.05, 0.61, 0.76, 0.74],
        "payload": {"city": "Berlin", "country": "Germany"}
      },
      {
        "id": 2,
        "vector": [0.19, 0.81, 0.75, 0.11],
        "payload": {"city": "London", "country": "UK"}
      },
      {
        "id": 3,
        "vector": [0.36, 0.55, 0.47, 0.94],
        "payload": {"city": "Paris", "country": "France"}
      }
    ]
  }"""
SEED_NAMED = """{
    "points": [
      {
        "id": 1,
        "vector": {
          "text": [0.1, 0.2, 0.3, 0.4],
          "image": [0.5, 0.6, 0.7, 0.8]
        },
        "payload": {
          "title": "Product A",
          "description": "High quality item"
        }
      }
    ]
  }"""
SEED_BATCH = """{
    "batch": {
      "ids": [1, 2, 3],
      "vectors": [
        [0.05, 0.61, 0.76, 0.74],
        [0.19, 0.81, 0.75, 0.11],
        [0.36, 0.55, 0.47, 0.94]
      ],
      "payloads": [
        {"city": "Berlin"},
        {"city": "London"},
        {"city": "Paris"}
      ]
    }
  }"""
# The seed's last two examples elide their points with `...`: not JSON, so a format error.
SEED_UPDATE_MODE = """{
    "points": [...],
    "update_mode": "insert_only"
  }"""
SEED_WAIT = "{...}"
