"""The monthly budget against moto's Budgets over HTTP: created once, with its 80% email alert."""

from __future__ import annotations

import pytest

from cloud.aws.budget import BUDGET_NAME, ensure_monthly_budget
from cloud.aws.session import AwsSettings, client
from cloud.errors import CloudError

from ..conftest import EmulatedAws


def test_budget_is_created_once_with_email_alert(aws: EmulatedAws) -> None:
    assert ensure_monthly_budget(aws.settings, 10, "artist@example.com") is True
    assert ensure_monthly_budget(aws.settings, 10, "artist@example.com") is False

    budgets = client(aws.admin, "budgets")  # read back as the account
    found = budgets.describe_budgets(AccountId="123456789012")["Budgets"]
    assert [b["BudgetName"] for b in found] == [BUDGET_NAME]
    assert found[0]["BudgetLimit"] == {"Amount": "10.00", "Unit": "USD"}
    assert found[0]["TimeUnit"] == "MONTHLY"
    notes = budgets.describe_notifications_for_budget(AccountId="123456789012", BudgetName=BUDGET_NAME)
    assert notes["Notifications"] == [
        {
            "NotificationType": "ACTUAL",
            "ComparisonOperator": "GREATER_THAN",
            "Threshold": 80.0,
            "ThresholdType": "PERCENTAGE",
        }
    ]


@pytest.mark.parametrize(
    ("amount", "email", "message"),
    [
        (0, "artist@example.com", "The monthly budget must be more than $0."),
        (10, "not-an-address", "The email address for budget alerts does not look right."),
    ],
)
def test_bad_input_is_explained(aws: EmulatedAws, amount: float, email: str, message: str) -> None:
    with pytest.raises(CloudError) as info:
        ensure_monthly_budget(aws.settings, amount, email)
    assert info.value.message == message
    assert info.value.action
    assert client(aws.admin, "budgets").describe_budgets(AccountId="123456789012").get("Budgets", []) == []


def test_unreachable_aws_is_explained() -> None:
    settings = AwsSettings(
        access_key_id="AKIAEXAMPLETESTKEY00",
        secret_access_key="test-secret-not-real",
        service_endpoints=(("sts", "http://127.0.0.1:9"), ("budgets", "http://127.0.0.1:9")),
        connect_timeout=0.5,
        max_attempts=1,
    )
    with pytest.raises(CloudError) as info:
        ensure_monthly_budget(settings, 10, "artist@example.com")
    assert info.value.message == "Could not set up the monthly budget."
    assert info.value.action == "Check your internet connection and try again."
