"""The two Hydra config sources zoo registers (zoo.train.config.store_configs, with Hydra's `Plugins.register`).

Module-level classes, so a sweep's job process that Hydra's launcher starts imports them by name. Importing
this module imports Hydra.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

from zoo.plugin import registry
from zoo.plugin.discovery import loaded
from zoo.train.options import PACKAGE_SCHEME, PLUGINS_SCHEME, own_config, plugin_option
from zoo.train.schemas import GROUPS, plugin_schema


class PluginConfigSource(ConfigSource):
    """The Hydra config source of plugin options (scheme zoo-plugins://): `model=lenet5` is a node made from the
    plugin's signature (plugin_schema), built when Hydra loads it. Hydra's ConfigStore would convert every
    option of every installed package on each command; this converts the few a composition uses."""

    @staticmethod
    def scheme() -> str:
        return PLUGINS_SCHEME

    def _option(self, config_path: str):
        group, _, name = self._normalize_file_name(config_path.strip("/")).removesuffix(".yaml").rpartition("/")
        return plugin_option(group, name), name

    def load_config(self, config_path: str) -> ConfigResult:
        plugin, name = self._option(config_path)
        if plugin is None:
            raise ConfigLoadError(f"Config not found : {self.full_path()}/{config_path}")
        node = OmegaConf.structured(plugin_schema(plugin, name))
        return ConfigResult(config=node, path=self.full_path(), provider=plugin.package, header={"package": None})

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in ("", *GROUPS)

    def is_config(self, config_path: str) -> bool:
        return self._option(config_path)[0] is not None

    def list(self, config_path: str, results_filter) -> list[str]:
        group = config_path.strip("/")
        if group == "":
            return sorted(GROUPS) if results_filter in (None, ObjectType.GROUP) else []
        if group not in GROUPS or results_filter not in (None, ObjectType.CONFIG):
            return []
        return sorted({n for p in registry.registries[GROUPS[group]] for n in (p.name, *p.qualified_names)})


class PackageConfigSource(ConfigSource):
    """The Hydra config source that reads a plugin package's conf/ folder (scheme zoo-package://): files as
    Hydra's own file source reads them, except that a bare name of a plugin the package registers, and another
    package too, means the package's own (`- net` in its model preset is `zoo-acme:net`)."""

    @staticmethod
    def scheme() -> str:
        return PACKAGE_SCHEME

    def _full(self, config_path: str) -> Path:
        return Path(self.path) / config_path

    def load_config(self, config_path: str) -> ConfigResult:
        path = self._full(self._normalize_file_name(config_path))
        if not path.is_file():
            raise ConfigLoadError(f"Config not found : {path}")
        text = path.read_text(encoding="utf-8")
        header = ConfigSource._get_header_dict(text[:512])
        cfg = OmegaConf.to_container(OmegaConf.create(text), resolve=False) or {}
        here = Path(self.path).resolve()
        package = next((p.package for p in loaded if p.config_dir and Path(p.config_dir).resolve() == here), "")
        group = config_path.rpartition("/")[0]
        if package and isinstance(cfg, dict):
            cfg = own_config(cfg, group, header, package)
        return ConfigResult(config=OmegaConf.create(cfg), path=self.full_path(), provider=self.provider, header=header)

    def available(self) -> bool:
        return self.is_group("")

    def is_group(self, config_path: str) -> bool:
        return self._full(config_path).is_dir()

    def is_config(self, config_path: str) -> bool:
        return self._full(self._normalize_file_name(config_path)).is_file()

    def list(self, config_path: str, results_filter) -> list[str]:
        files: list[str] = []
        for entry in sorted(self._full(config_path).iterdir()):
            self._list_add_result(files, f"{config_path}/{entry.name}".lstrip("/"), entry.name, results_filter)
        return sorted(set(files))
