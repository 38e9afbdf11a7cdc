"""Typed fixes an admin may approve (issue 6 item 4): builders in `propose`, executors that
check, plan and apply them through the tenant client (see `checks.remedies.api`).
"""
