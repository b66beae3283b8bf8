"""The sandbox: a local stand-in for the Vendor API's external registries.

``server.SandboxServer`` (background, for tests) and ``server.run`` (foreground, for
``regsync sandbox``); ``faults`` holds the injected misbehaviour.
"""
