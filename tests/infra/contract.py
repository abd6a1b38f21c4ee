"""DESIGN §6: the stack outputs the RAG stack reads, each with the shape of its value.

``CONTRACT`` is the first list and never changes; ``ADDED`` holds outputs added since (outputs
may be added, never renamed). ``customDomainTarget`` exists only with a custom domain.
"""

from __future__ import annotations

CONTRACT = {
    "websocketUrl": r"wss://[a-z0-9.-]+(/[A-Za-z0-9_-]+)?",
    "managementEndpoint": r"https://[a-z0-9]+\.execute-api\.[a-z0-9-]+\.amazonaws\.com/[\w-]+",
    "apiId": r"[a-z0-9]+",
    "apiExecutionArn": r"arn:aws:execute-api:[a-z0-9-]+:\d{12}:[a-z0-9]+",
    "stageName": r"[A-Za-z0-9_-]+",
    "connectionsTableName": r"[\w.-]+",
    "connectionsTableArn": r"arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table/[\w.-]+",
    "userIndexName": r"userId-index",
    "chatQueueUrl": r"https://sqs\.[a-z0-9-]+\.amazonaws\.com/\d{12}/[\w-]+\.fifo",
    "chatQueueArn": r"arn:aws:sqs:[a-z0-9-]+:\d{12}:[\w-]+\.fifo",
    "chatDeadLetterQueueUrl": r"https://sqs\.[a-z0-9-]+\.amazonaws\.com/\d{12}/[\w-]+\.fifo",
    "senderPolicyArn": r"arn:aws:iam::\d{12}:policy/[\w+=,.@-]+",
    "chatConsumerPolicyArn": r"arn:aws:iam::\d{12}:policy/[\w+=,.@-]+",
    "runtimeLayerArn": r"arn:aws:lambda:[a-z0-9-]+:\d{12}:layer:[\w-]+:\d+",
    "alarmTopicArn": r"arn:aws:sns:[a-z0-9-]+:\d{12}:[\w-]+",
}
ADDED = {
    "chatVisibilityTimeoutSeconds": r"\d+",
    "connectionCloserPolicyArn": r"arn:aws:iam::\d{12}:policy/[\w+=,.@-]+",
}
WITH_CUSTOM_DOMAIN = {
    "customDomainTarget": r"d-[a-z0-9]+\.execute-api\.[a-z0-9-]+\.amazonaws\.com",
}
