"""zoo's version and the plugin API version: the lowest layer, so every wing can read them."""

__version__ = "0.1.0"
# 2: Backbone.load_source(source) replaced load_pretrained(file); heads' outputs by task role
PLUGIN_API_VERSION = 2
