"""The hub-hosted SFTP repository: each payer's systems collect their members' files here.

A payer that does not run an SFTP server of its own (``Payer.delivery_mode`` =
``hub_repository``) has deliveries written into its folder of the repository, and its
systems sign in with SSH keys its administrators registered (``RepositoryKey``), see that
folder as ``/``, download and remove what was delivered, and nothing else.
"""
