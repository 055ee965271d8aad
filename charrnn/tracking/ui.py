"""The MLflow UI as `make ui` serves it: MLflow's own server app opening on the Model training views,
and the address of each experiment's runs table."""
from __future__ import annotations

from charrnn.tracking.store import Tracker

# Where that switch lives: the browser's localStorage, under this key, as JSON (MLflow 3.17's UI
# bundle: `useLocalStorage({key: "mlflow.workflowType", version: 1})` stores `<key>_v<version>`).
# `create_ui_app` presets it once, so the plain address opens on Model training too; a user's own
# choice on the switch is kept.
UI_WORKFLOW_STORAGE_KEY = "mlflow.workflowType_v1"
UI_PRESET_EXTENSION = "charrnn.ui_preset"   # marks MLflow's Flask app as carrying the preset hook
UI_DEFAULT_VIEW_SCRIPT = (f"<script>try{{if(localStorage.getItem({UI_WORKFLOW_STORAGE_KEY!r})===null)"
                          f"localStorage.setItem({UI_WORKFLOW_STORAGE_KEY!r},'\"machine_learning\"')}}"
                          "catch(e){}</script>")


def ui_links(base_url: str) -> list[str]:
    """`experiment: address` of each experiment's runs table in the MLflow UI served at `base_url`."""
    tracker = Tracker()
    return [f"{name}: {base_url.rstrip('/')}/{tracker.ui_path(name)}"
            for name in tracker.experiment_names() if name != "Default"]


def create_ui_app():
    """MLflow's own server app (uvicorn factory, `mlflow ui|server --app-name charrnn`) whose UI
    opens on the Model training views: the runs table and charts, not the GenAI overview. The
    preset is a Flask `after_request` hook on MLflow's app, the way MLflow's app plugins extend it."""
    from charrnn.tracking.mlflow_private import fastapi_app, server_app

    flask_app = server_app()
    if UI_PRESET_EXTENSION not in flask_app.extensions:   # once, however many apps are created
        flask_app.after_request(preset_model_training)
        flask_app.extensions[UI_PRESET_EXTENSION] = True
    return fastapi_app(flask_app)


def preset_model_training(response):
    """MLflow's index page with UI_DEFAULT_VIEW_SCRIPT first in its <head>; other responses as they are."""
    from flask import request

    if request.endpoint != "serve" or response.mimetype != "text/html":
        return response
    response.direct_passthrough = False
    html = response.get_data(as_text=True)
    response.set_data(html.replace("<head>", f"<head>{UI_DEFAULT_VIEW_SCRIPT}", 1))
    for validator in ("ETag", "Last-Modified"):  # they describe MLflow's file, not this page
        response.headers.pop(validator, None)
    return response
