"""The connections table of DESIGN §2, built from the constants in ``runtime.schema``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:ConnectionTable"
KEY_ATTRIBUTE_TYPE = "S"


@dataclass(frozen=True)
class ConnectionTableArgs:
    point_in_time_recovery: bool
    deletion_protection: bool
    # Empty: the AWS-owned key (no KMS charges); else a customer managed key's ARN.
    kms_key_arn: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


class ConnectionTable(pulumi.ComponentResource):
    """PAY_PER_REQUEST table keyed ``PK``/``SK``, GSI ``userId-index``, TTL on ``ttl``.

    DynamoDB encrypts every table at rest. ``enabled=False`` keeps the AWS-owned key, which costs
    nothing; ``enabled=True`` alone would pick the AWS managed key (``aws/dynamodb``), billed
    per KMS request. A customer key is opt-in through ``tableKmsKeyArn``. The name is left to
    Pulumi (a random suffix), so two stacks or a replacement never collide.
    """

    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    user_index_name: pulumi.Output[str]
    user_index_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ConnectionTableArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.table = aws.dynamodb.Table(
            name,
            billing_mode=schema.BILLING_MODE,
            hash_key=schema.PARTITION_KEY,
            range_key=schema.SORT_KEY,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=attribute, type=KEY_ATTRIBUTE_TYPE)
                for attribute in schema.KEY_ATTRIBUTES
            ],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=schema.USER_INDEX_NAME,
                    # pulumi_aws 7: key_schemas, not the deprecated hash_key/range_key.
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=schema.USER_INDEX_HASH_KEY, key_type="HASH"
                        ),
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=schema.USER_INDEX_RANGE_KEY, key_type="RANGE"
                        ),
                    ],
                    # Only what the index's readers need: a touch then rewrites it once a
                    # TTL step at most, not on every message (runtime/schema.py).
                    projection_type="INCLUDE",
                    non_key_attributes=list(schema.USER_INDEX_PROJECTED_ATTRIBUTES),
                )
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=schema.TTL_ATTRIBUTE, enabled=True),
            server_side_encryption=(
                aws.dynamodb.TableServerSideEncryptionArgs(
                    enabled=True, kms_key_arn=args.kms_key_arn
                )
                if args.kms_key_arn
                else aws.dynamodb.TableServerSideEncryptionArgs(enabled=False)
            ),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(
                enabled=args.point_in_time_recovery
            ),
            deletion_protection_enabled=args.deletion_protection,
            tags=dict(args.tags),
            opts=child,
        )
        self.name = self.table.name
        self.arn = self.table.arn
        self.user_index_name = pulumi.Output.from_input(schema.USER_INDEX_NAME)
        self.user_index_arn = self.table.arn.apply(
            lambda arn: f"{arn}/index/{schema.USER_INDEX_NAME}"
        )
        self.register_outputs(
            {
                "name": self.name,
                "arn": self.arn,
                "userIndexName": self.user_index_name,
                "userIndexArn": self.user_index_arn,
            }
        )
