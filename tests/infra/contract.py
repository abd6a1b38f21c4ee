"""DESIGN §6: the stack outputs the RAG stack reads, each with the shape of its value."""

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
