"""The limits AWS enforces and moto does not, each a `Rule` with the AWS documentation named.

The server (`server.py`) runs `check` of every rule in `RULES`, in order, after authentication
and authorisation and before moto; then, for a request every rule let through:

- `adjust(request)`: rules that change what moto sees (`AdjustingRule`: the 1,000-key list page)
  edit `request.query` / `request.params`, which the server must forward as they are afterwards;
- `respond(request)` of each `RespondingRule`: an answer in moto's place (a repeated ClientToken),
  and after moto answered, `record(request, status, headers, body)` with every answer, errors too;
- `reset()` (`ResettingRule`) whenever moto's state is reset (`/moto-api/reset`);
- `/strict-api/conflicts?every=N` -> `conflicts().set_conflicts(N)`: 409 ConditionalRequestConflict
  on every N-th conditional write (0: off, the default).

`dev/README.md` ("The strict layer: what AWS refuses and moto does not") lists every rule with
AWS's answer, the AWS documentation and the test that shows it.
"""

from __future__ import annotations

from . import rules_batch, rules_ec2, rules_iam, rules_notify, rules_post, rules_s3
from .model import AwsRequest, Rule

RULES: list[Rule] = [
    *rules_iam.RULES,
    *rules_post.RULES,
    *rules_s3.RULES,
    *rules_ec2.RULES,
    *rules_batch.RULES,
    *rules_notify.RULES,
]


def reset() -> None:
    """Forget everything the rules remember (tokens, the conflict switch): moto was reset."""
    for rule in RULES:
        forget = getattr(rule, "reset", None)
        if forget is not None:
            forget()


def adjust(request: AwsRequest) -> None:
    """Let every adjusting rule change the request before moto sees it."""
    for rule in RULES:
        change = getattr(rule, "adjust", None)
        if change is not None:
            change(request)


def conflicts() -> rules_s3.ConditionalConflicts:
    """The conditional-write conflict rule, for the server's `/strict-api/conflicts?every=N`."""
    return next(rule for rule in RULES if isinstance(rule, rules_s3.ConditionalConflicts))
