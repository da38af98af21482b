from django.apps import AppConfig


class SftpRepositoryConfig(AppConfig):
    name = "exchange.repository"
    label = "sftp_repository"
    verbose_name = "SFTP repository"
