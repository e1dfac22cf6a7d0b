"""A Baton trigger in Python: hands billing trouble (refunds, chargebacks,
double charges) to a human, tagged `billing`. Built with componentize-py
against its own narrow world (wit/world.wit), which imports only `log` and
`config` from the SDK's `baton:plugin` package; see the README for the steps.
"""
import wit_world
from wit_world.imports import config, log, types


class WitWorld(wit_world.WitWorld):
    def on_event(self, event: wit_world.Event):
        words = (config.get("words") or "refund,chargeback").split(",")
        text = " " + "".join(c if c.isalnum() else " " for c in event.text.lower()) + " "
        for word in (w.strip().lower() for w in words):
            if word and f" {word} " in text:
                log.log(log.Level.INFO, f"billing word {word!r} seen")
                return types.Escalation(
                    note=f"the visitor mentioned {word}",
                    priority=2,
                    department=None,
                    tags=["billing"],
                )
        return None
