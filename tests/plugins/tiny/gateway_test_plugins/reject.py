"""An attempt check that refuses answers from one model (to exercise guardrail fallback)."""

import json

from gateway import hookimpl


class RejectModel:
    def __init__(self, model: str):
        self.model = model

    async def check(self, ctx, response):
        if json.loads(response.body).get("model") == self.model:
            return f"answers of {self.model} are not allowed"
        return None


@hookimpl
def attempt_check(config, context):
    return RejectModel(config["model"])
