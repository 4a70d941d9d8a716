"""An iris classifier served as a WSGI application (stdlib only).

POST a JSON object {"sepal_length": .., "sepal_width": .., "petal_length": .., "petal_width": ..}
(or a list of four numbers) and get the nearest class centroid back.
"""
import json
import math
import os

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "iris.json")) as f:
    MODEL = json.load(f)
FEATURES = MODEL["features"]


def classify(values):
    best, best_d = None, math.inf
    for name, centroid in MODEL["centroids"].items():
        d = math.dist(values, centroid)
        if d < best_d:
            best, best_d = name, d
    return best, best_d


def respond(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":
        return respond(start_response, "200 OK", {
            "model": "iris", "features": FEATURES,
            "script_name": environ.get("SCRIPT_NAME", ""), "path_info": environ.get("PATH_INFO", ""),
        })
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        payload = json.loads(environ["wsgi.input"].read(size) or b"{}")
        values = payload if isinstance(payload, list) else [payload[f] for f in FEATURES]
        values = [float(v) for v in values]
        if len(values) != 4:
            raise ValueError("four features")
    except (ValueError, KeyError, TypeError) as e:
        return respond(start_response, "400 Bad Request", {"error": f"send the four features {FEATURES}: {e}"})
    label, distance = classify(values)
    print(json.dumps({"vh_metadata": {"class": label, "distance": round(distance, 4)}}), flush=True)
    return respond(start_response, "200 OK", {"class": label, "distance": distance})
