"""The controller: node registry, job store, scheduler, reconciler, request/reply
API, and the `controller` CLI that calls that API.
"""
