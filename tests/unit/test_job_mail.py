"""The e-mail when a job ends, against the emulated account: what Set Up makes, what the
machine writes, and the words AWS would send for each ending (tests/mail_delivery.py plays
S3 -> EventBridge -> SNS, which moto does not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from cloud.aws import bucket_setup, job_mail, storage
from cloud.aws.session import client
from cloud.machine import contract, notice
from cloud.machine.transport import Poster
from tests.mail_delivery import deliver

EMAIL = "artist@example.com"
SPEC_NOTICE = {"label": "forest.blend", "usd_per_hour": 0.526, "keep_days": 14}


def machine_notice(aws, bucket: str, job_id: str, frames: int) -> notice.Notice:
    """The machine's notice writer over the job's real presigned POST, as the supervisor makes it."""
    post = storage.presign_outputs(aws.settings, bucket, job_id, 3600)
    poster = Poster(post["url"], post["fields"], contract.out_prefix(job_id))
    said: list[str] = []
    spec = {"notice": SPEC_NOTICE, "frames": list(range(1, frames + 1))}
    return notice.Notice(spec, poster.put, said.append)


@pytest.fixture
def wired(aws, tmp_path: Path) -> str:
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    job_mail.ensure_job_mail(aws.settings, bucket, EMAIL)
    return bucket


def test_set_up_makes_the_topic_rules_and_bucket_events_once(aws, tmp_path: Path) -> None:
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    admin_s3 = client(aws.admin, "s3")
    other = client(aws.admin, "sns").create_topic(Name="someone-elses")["TopicArn"]
    earlier = {"TopicConfigurations": [{"Id": "theirs", "TopicArn": other, "Events": ["s3:ObjectRemoved:*"]}]}
    admin_s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=earlier)

    first = job_mail.ensure_job_mail(aws.settings, bucket, EMAIL)
    again = job_mail.ensure_job_mail(aws.settings, bucket, EMAIL.upper())  # same address

    assert first == [
        f"a subscription for {EMAIL} (AWS sends a confirmation mail first)",
        "the bucket's events to EventBridge",
    ]
    assert again == []
    sns = client(aws.admin, "sns")
    topic = f"arn:aws:sns:us-east-1:123456789012:{job_mail.TOPIC_NAME}"
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", EMAIL)]
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert policy["Statement"] == [
        {
            "Sid": "CloudRenderRulesPublish",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": {
                "ArnLike": {
                    "aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/cloud-render-notice-*"
                },
                "StringEquals": {"aws:SourceAccount": "123456789012"},
            },
        }
    ]
    config = admin_s3.get_bucket_notification_configuration(Bucket=bucket)
    assert config["EventBridgeConfiguration"] == {}
    assert [c["Id"] for c in config["TopicConfigurations"]] == ["theirs"]  # kept
    events = client(aws.admin, "events")
    rules = events.list_rules(NamePrefix=job_mail.RULE_PREFIX)["Rules"]
    assert sorted(r["Name"] for r in rules) == sorted(job_mail.rule_name(e) for e in notice.ENDINGS)
    for rule in rules:
        targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert [(t["Id"], t["Arn"]) for t in targets] == [("mail", topic)]


def test_the_words_of_each_ending(aws, wired: str) -> None:
    """What the artist reads, for each way a job ends and for the quote that waits."""
    sent = {
        "done": ("j-done", 24, {"done": 24, "usd": 3.4}),
        "failed": ("j-failed", 24, {"done": 5, "usd": 0.71, "kind": "gpu_memory"}),
        "capped": ("j-capped", 24, {"done": 17, "usd": 2.0, "said": notice.STOP_WORDS["time_cap"][1]}),
        "cancelled": (
            "j-cancelled",
            24,
            {"done": 3, "usd": 0.2, "said": notice.STOP_WORDS["stopped_after_quote"][1]},
        ),
        "stopped": ("j-stopped", 24, {"done": 9, "usd": 1.05, "said": notice.STOP_WORDS["spot"][1]}),
        "quote": (
            "j-quote",
            24,
            {"done": 3, "usd": 0.2, "seconds_per_frame": 41.25, "left": 21, "usd_rest": 1.27},
        ),
    }
    for ending, (job_id, frames, facts) in sent.items():
        assert machine_notice(aws, wired, job_id, frames).send(ending, **facts)

    mails = {m.rule.removeprefix(job_mail.RULE_PREFIX): m for m in deliver(aws.admin, wired)}

    assert sorted(mails) == sorted(sent)  # one e-mail each, from its own rule only
    assert {m.to for m in mails.values()} == {(EMAIL,)}
    tail = '"(Cloud Render for Blender, set up in your AWS account.)"'
    assert mails["done"].text == "\n".join(
        [
            '"Cloud Render: a render is done."',
            '"jobs/j-done/out/notice/done/forest.blend_is_done_24_of_24_frames_about_3.40_USD_frames_kept_14_days"',
            '"Open the scene in Blender: Cloud Render brings the frames to your computer."',
            tail,
        ]
    )
    assert mails["failed"].text.splitlines()[:3] == [
        '"Cloud Render: a render failed."',
        '"jobs/j-failed/out/notice/failed/forest.blend_failed_gpu_memory_5_of_24_frames_done_about_0.71_USD"',
        '"Open the scene in Blender to read what went wrong; the frames done so far are kept."',
    ]
    assert mails["capped"].text.splitlines()[1:3] == [
        '"jobs/j-capped/out/notice/capped/forest.blend_stopped_at_its_time_cap_17_of_24_frames_done_about_2.00_USD"',
        '"Open the scene in Blender, raise Max Hours or Max Cost, and relaunch the missing frames."',
    ]
    assert mails["cancelled"].text.splitlines()[:2] == [
        '"Cloud Render: a render was stopped after its quote."',
        '"jobs/j-cancelled/out/notice/cancelled/forest.blend_was_stopped_after_the_quote_3_of_24_frames_done_about_0.20_USD"',
    ]
    assert mails["stopped"].text.splitlines()[1] == (
        '"jobs/j-stopped/out/notice/stopped/'
        'forest.blend_stopped_because_AWS_took_the_spot_machine_back_9_of_24_frames_done_about_1.05_USD"'
    )
    assert mails["quote"].text.splitlines()[:3] == [
        '"Cloud Render: a render waits for your answer to its quote."',
        '"jobs/j-quote/out/notice/quote/forest.blend_waits_for_your_answer_41.2_s_per_frame_21_frames_left_about_1.27_USD_more"',
        '"Open the scene in Blender within 20 minutes to answer; '
        'without an answer the machine stops after the scout frames."',
    ]


def test_the_quote_wait_the_mail_promises_is_the_machines() -> None:
    assert contract.QUOTE_WAIT_S == 20 * 60  # "within 20 minutes" in job_mail.NEXT_STEP["quote"]


def test_other_objects_and_other_buckets_send_nothing(aws, wired: str) -> None:
    post = storage.presign_outputs(aws.settings, wired, "j1", 3600)
    poster = Poster(post["url"], post["fields"], contract.out_prefix("j1"))
    poster.put("done.json", b"{}")
    poster.put("frames/notice/done/x.png", b"x")
    assert deliver(aws.admin, wired) == []
    # A notice in another bucket of the account, its events on too: no rule names that bucket.
    other = "cloud-render-other"
    s3 = client(aws.admin, "s3")
    s3.create_bucket(Bucket=other)
    s3.put_bucket_notification_configuration(
        Bucket=other, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    machine_notice(aws, other, "j2", 1).send("done", done=1)
    assert s3.list_objects_v2(Bucket=other, Prefix="jobs/j2/out/notice/done/")["KeyCount"] == 1
    assert deliver(aws.admin, other) == []


def test_a_hostile_label_reaches_the_inbox_as_safe_words() -> None:
    words = notice.words_for(
        "done", "<a href='x'>win</a>\n$$$ " + "é" * 10, {"done": 1, "total": 1, "usd": 1}
    )
    assert words == "a-href-x-win-a_is_done_1_of_1_frames_about_1.00_USD_frames_kept_0_days"
    assert notice.safe_label("森林.blend") == "blend"
    assert notice.safe_label("...") == notice.FALLBACK_LABEL
    assert len(notice.safe_label("a" * 500)) == notice.MAX_LABEL_CHARS
    key = notice.notice_key(contract.out_prefix("x" * 64), "done", notice.words_for("done", "a" * 500, {}))
    assert len(key.encode()) <= 1024  # S3's largest key


def test_a_spec_without_notice_writes_nothing() -> None:
    written: list[str] = []
    sent = notice.Notice({"frames": [1]}, lambda k, b: written.append(k), written.append).send("done")
    assert (sent, written) == ("", [])


def test_the_daily_policy_cannot_wire_mail_and_set_up_only_targets_our_topic(aws, wired: str) -> None:
    events = client(aws.settings, "events")
    theirs = client(aws.admin, "sns").create_topic(Name="not-ours")["TopicArn"]
    with pytest.raises(ClientError) as refused:
        events.put_targets(Rule=job_mail.rule_name("done"), Targets=[{"Id": "x", "Arn": theirs}])
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "events:PutTargets" in str(refused.value)
    with pytest.raises(ClientError):
        events.put_rule(Name="other-rule", EventPattern=json.dumps({"source": ["aws.s3"]}))


def test_no_mail_leaves_without_the_topic_policy_for_our_rules(aws, wired: str) -> None:
    """The delivery honours the topic policy: with EventBridge's permission gone, nothing is sent."""
    machine_notice(aws, wired, "j3", 2).send("done", done=2)
    assert len(deliver(aws.admin, wired)) == 1
    sns = client(aws.admin, "sns")
    topic = f"arn:aws:sns:us-east-1:123456789012:{job_mail.TOPIC_NAME}"
    other_rules = job_mail.topic_policy(topic, "us-east-1", "123456789012")
    other_rules["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"] = (
        "arn:aws:events:*:*:rule/someone-else"
    )
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(other_rules))
    assert deliver(aws.admin, wired) == []
