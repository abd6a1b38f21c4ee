"""The Lambda layers and the function code archive, all from ``components.packaging``.

* ``layer_arn``: the dependencies of ``runtime/requirements.txt``; the handlers use it with
  their own code archive (``code``, the ``runtime`` package alone).
* ``runtime_layer_arn``: the same dependencies plus the ``runtime`` package, so a RAG-side
  function gets ``MessageSender`` and the frame models from one layer (the ``runtimeLayerArn``
  output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.naming import physical_name
from components.packaging import (
    LAYER_PYTHON_DIR,
    PACKAGE_NAME,
    RUNTIME_REQUIREMENTS,
    RUNTIME_SOURCE,
    CommandRunner,
    LayerBuild,
    prepare_code,
    prepare_dependencies,
    run_command,
)
from components.settings import LambdaSettings

COMPONENT_TYPE = "rag-websocket:components:DependencyLayer"
MAX_LAYER_NAME_LENGTH = 140


@dataclass(frozen=True)
class DependencyLayerArgs:
    lambda_settings: LambdaSettings
    requirements: Path = RUNTIME_REQUIREMENTS
    source: Path = RUNTIME_SOURCE
    run: CommandRunner = run_command


class DependencyLayer(pulumi.ComponentResource):
    layer_arn: pulumi.Output[str]
    runtime_layer_arn: pulumi.Output[str]
    code: pulumi.Archive

    def __init__(
        self, name: str, args: DependencyLayerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lambda_settings = args.lambda_settings
        build = LayerBuild(
            architecture=lambda_settings.architecture,
            python_version=lambda_settings.python_version,
            requirements=args.requirements,
        )
        dependencies_dir = prepare_dependencies(build, run=args.run)
        code_dir = prepare_code(args.source)
        self.code = pulumi.FileArchive(str(code_dir))
        self.dependencies = aws.lambda_.LayerVersion(
            f"{name}-dependencies",
            layer_name=physical_name("dependencies", max_length=MAX_LAYER_NAME_LENGTH),
            description="rag-websocket handler dependencies (runtime/requirements.txt)",
            code=pulumi.FileArchive(str(dependencies_dir)),
            compatible_runtimes=[lambda_settings.runtime],
            compatible_architectures=[lambda_settings.architecture],
            opts=child,
        )
        self.runtime = aws.lambda_.LayerVersion(
            f"{name}-runtime",
            layer_name=physical_name("runtime", max_length=MAX_LAYER_NAME_LENGTH),
            description="rag-websocket runtime package (MessageSender, frames) and dependencies",
            code=pulumi.AssetArchive(
                {
                    LAYER_PYTHON_DIR: pulumi.FileArchive(str(dependencies_dir / LAYER_PYTHON_DIR)),
                    f"{LAYER_PYTHON_DIR}/{PACKAGE_NAME}": pulumi.FileArchive(
                        str(code_dir / PACKAGE_NAME)
                    ),
                }
            ),
            compatible_runtimes=[lambda_settings.runtime],
            compatible_architectures=[lambda_settings.architecture],
            opts=child,
        )
        self.layer_arn = self.dependencies.arn
        self.runtime_layer_arn = self.runtime.arn
        self.register_outputs(
            {"layerArn": self.layer_arn, "runtimeLayerArn": self.runtime_layer_arn}
        )
