"""Working from a laptop: reach a cluster's login node over the user's own OpenSSH client.

`ssh`: one multiplexed connection (ControlMaster) per command, its errors as E00N;
`sessions`: find a session on the login node and reach its coordinator through the tunnel;
`upload`: copy a recipe and what it names to the login node and submit it there;
`download`: bring a session's results back, resumable. docs/remote.md tells the whole story.
"""
