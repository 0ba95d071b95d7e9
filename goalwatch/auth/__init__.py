"""Who is asking, and whether they may: sign-in, roles and the policy of every HTTP route.

- :mod:`goalwatch.auth.principal`: who is asking (a person, or a system) and their roles;
- :mod:`goalwatch.auth.tokens`: OpenID Connect bearer tokens checked against the identity
  provider's published keys;
- :mod:`goalwatch.auth.policy`: what each route needs, declared on the route itself;
- :mod:`goalwatch.auth.scope`: which people a person may see, following the org chart.
"""
