"""A kubeconfig with two contexts (staging, the current one, and prod) on one cluster,
for the tests that check how the kubernetes executor reads and parses a kubeconfig."""

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts:
  - {name: staging, context: {cluster: c, user: u}}
  - {name: prod, context: {cluster: c, user: u}}
current-context: staging
"""
