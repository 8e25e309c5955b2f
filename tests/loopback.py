"""Plain HTTP requests over real loopback sockets, through one shared httpx client.

``httpx.get()`` and friends build a new Client per call, and each new Client loads the CA
bundle into an SSL context: about 50 ms of CPU (more under coverage) for a request to
127.0.0.1 that never uses TLS, paid on every poll of a starting gateway's /readyz. One client
pays it once. It behaves as the module functions do: keep-alive off (every request opens and
closes its own connection, so connection caps and shutdowns see what they saw before), no
cookies kept between requests, httpx's default 5 s timeout.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

_CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0),
                       cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))

request = _CLIENT.request
stream = _CLIENT.stream
get = _CLIENT.get
post = _CLIENT.post
