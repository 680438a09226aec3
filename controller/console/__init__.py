"""The operator console: server-rendered pages under /console of the control API.

`views` (pure: the policy, status and history in, page models out), `picture` (pure: dot's
drawing of the zones and conduits, made live), `text` (pure: diffs, located errors, times),
`sessions` (sign-in and CSRF tokens), `web` (the Flask blueprint: the only part that reads
the running controller; every change it makes is a call of the control API itself).
"""
