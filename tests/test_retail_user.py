"""The scripted retail customer: identification, confirmations, one intent at a time, STOP."""

from __future__ import annotations

from lightning_asym.envs.retail import RetailEnv, ScriptedRetailUser
from lightning_asym.envs.users import STOP, UserSimulator

ASK_ID = "Could you please give me your email, or your name and zip code, so I can verify your identity?"


def _task(pred):
    for t in RetailEnv().tasks("test"):
        if pred(t):
            return t
    raise LookupError


def _start(task, seed=0):
    user = ScriptedRetailUser()
    first = user.reset(task, seed)
    return user, first


def _confirm_text(intent):
    return f"Here is what I will do: {intent['describe']}. Please confirm (yes/no)."


def test_protocol_and_identification():
    assert isinstance(ScriptedRetailUser(), UserSimulator)
    t = _task(lambda t: t.data["auth"] == "email")
    user, first = _start(t)
    assert first == t.data["intents"][0]["opening"] and "#W" not in first
    assert t.data["email"] in user.respond(ASK_ID)
    again = user.respond("Sorry, I could not find a user with that email. Can you give your name and zip?")
    assert t.data["zip"] in again and t.data["first_name"] in again
    t = _task(lambda t: t.data["auth"] == "name_zip")
    user, _ = _start(t)
    reply = user.respond(ASK_ID)
    assert t.data["zip"] in reply and t.data["last_name"] in reply and t.data["email"] not in reply


def test_confirms_only_what_matches():
    t = _task(lambda t: t.data["intents"][0]["kind"] == "return" and len(t.data["intents"]) >= 2)
    it = t.data["intents"][0]
    user, _ = _start(t)
    user.respond(ASK_ID)
    assert user.respond("How can I help you today?") == it["details"]
    wrong_order = _confirm_text(it).replace(it["order_id"], "#W0000001")
    assert user.respond(wrong_order).startswith("No")
    wrong_pm = _confirm_text({**it, "describe": it["describe"].split(";")[0]})  # payment method missing
    assert user.respond(wrong_pm).startswith("No")
    assert user.respond(_confirm_text(it)).startswith("Yes")
    nxt = user.respond("Done, the return is requested.")
    assert t.data["intents"][1]["details"] in nxt


def test_each_kind_of_confirmation_matches_its_own_description():
    seen = set()
    for t in RetailEnv().tasks("test"):
        for k, it in enumerate(t.data["intents"]):
            if it["action"] is None or it["kind"] == "transfer":
                continue
            seen.add(it["kind"])
            user, _ = _start(t)
            user.k = k  # jump to this intent
            assert user.respond(_confirm_text(it)).startswith("Yes"), it["describe"]
    assert seen >= {"cancel", "modify_items", "modify_address", "modify_payment", "return", "exchange"}


def test_stops_after_last_intent_and_when_stuck():
    t = _task(lambda t: len(t.data["intents"]) == 1 and t.data["intents"][0]["kind"] == "cancel")
    it = t.data["intents"][0]
    user, _ = _start(t)
    user.respond(ASK_ID)
    assert user.respond(_confirm_text(it)).startswith("Yes")
    assert STOP in user.respond("Your order has been cancelled.")
    user, _ = _start(t)
    replies = [user.respond("Let me think about it.") for _ in range(4)]
    assert STOP not in replies[0] and STOP in replies[-1]


def test_questions_transfers_and_determinism():
    t = _task(lambda t: any(i["kind"] == "order_total" for i in t.data["intents"]))
    k = next(i for i, it in enumerate(t.data["intents"]) if it["kind"] == "order_total")
    it = t.data["intents"][k]
    user, _ = _start(t)
    user.k = k
    out = user.respond(f"The total was ${it['outputs'][0]}.")  # answered before being asked: move on
    assert user.k == k + 1 or STOP in out
    t = _task(lambda t: t.data["intents"][-1]["kind"] == "transfer")
    user, _ = _start(t)
    user.k = len(t.data["intents"]) - 1
    user.details_given = True
    replies = [user.respond("I can't help with that.") for _ in range(3)]
    assert "human" in replies[0] and STOP in replies[-1]
    a, b = _start(t, seed=3)[0], _start(t, seed=3)[0]
    script = [ASK_ID, "What can I do?", "Please confirm (yes/no) order #W1.", "ok"]
    assert [a.respond(x) for x in script] == [b.respond(x) for x in script]
