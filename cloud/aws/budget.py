"""A monthly AWS Budget that emails the artist when actual spend passes 80% of it.

It is the safety net behind the per-job caps: it covers everything in the account, including
anything left running outside the add-on. Created on request from the setup screen; running
it twice leaves one budget.
"""

from __future__ import annotations

import re

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import CloudError, ErrorCode
from .error_rules import classify
from .session import AwsSettings, client

BUDGET_NAME = "cloud-render-monthly"
ALERT_PERCENT = 80.0
BUDGETS_REGION = "us-east-1"  # AWS Budgets is a global service served from us-east-1
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _fail(exc: Exception) -> CloudError:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in ("AccessDeniedException", "AccessDenied"):
        return CloudError(
            "Your AWS user is not allowed to create budgets.",
            "Add the budgets permissions shown in the add-on's preferences to the IAM policy, then try again.",
            code=ErrorCode.ACCESS_DENIED,
            detail=str(exc),
        )
    return CloudError(
        "Could not set up the monthly budget.",
        "Check your internet connection and try again.",
        code=classify(exc),
        detail=str(exc),
    )


def valid_email(text: str) -> bool:
    """An address AWS can write to, as far as its shape says (the budget and the job e-mail)."""
    return bool(_EMAIL.match(text or ""))


def _validate(amount_usd: float, email: str) -> None:
    if not amount_usd or amount_usd <= 0:
        raise CloudError(
            "The monthly budget must be more than $0.",
            "Enter an amount such as 10.",
            code=ErrorCode.BAD_BUDGET_AMOUNT,
        )
    if not _EMAIL.match(email or ""):
        raise CloudError(
            "The email address for budget alerts does not look right.",
            "Enter the address where AWS should send the alert, like name@example.com.",
            code=ErrorCode.BAD_BUDGET_EMAIL,
        )


def ensure_monthly_budget(settings: AwsSettings, amount_usd: float, email: str) -> bool:
    """Create the budget and its 80%-of-actual email alert; False if it already exists."""
    _validate(amount_usd, email)
    settings = settings.in_region(BUDGETS_REGION)
    try:
        account_id = client(settings, "sts").get_caller_identity()["Account"]
        budgets = client(settings, "budgets")
        try:
            budgets.describe_budget(AccountId=account_id, BudgetName=BUDGET_NAME)
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
        budgets.create_budget(
            AccountId=account_id,
            Budget={
                "BudgetName": BUDGET_NAME,
                "BudgetLimit": {"Amount": f"{amount_usd:.2f}", "Unit": "USD"},
                "TimeUnit": "MONTHLY",
                "BudgetType": "COST",
            },
            NotificationsWithSubscribers=[
                {
                    "Notification": {
                        "NotificationType": "ACTUAL",
                        "ComparisonOperator": "GREATER_THAN",
                        "Threshold": ALERT_PERCENT,
                        "ThresholdType": "PERCENTAGE",
                    },
                    "Subscribers": [{"SubscriptionType": "EMAIL", "Address": email}],
                }
            ],
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DuplicateRecordException":
            return False  # created meanwhile by another call: the budget exists, as asked
        raise _fail(exc) from exc
    except BotoCoreError as exc:
        raise _fail(exc) from exc
    return True
