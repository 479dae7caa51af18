from rest_framework import serializers

from apps.catalog.models import CatalogSource, Entry


class EntrySerializer(serializers.ModelSerializer):
    languages = serializers.ListField(
        source="language_list", child=serializers.CharField(), read_only=True
    )
    tags = serializers.ListField(
        source="tag_list", child=serializers.CharField(), read_only=True
    )

    class Meta:
        model = Entry
        fields = (
            "id",
            "source",
            "opds_id",
            "name",
            "title",
            "summary",
            "languages",
            "category",
            "tags",
            "flavour",
            "publisher",
            "date",
            "period",
            "size",
            "download_url",
            "checksum_url",
            "illustration_url",
            "updated_at",
            "removed_at",
        )
        read_only_fields = fields


class SourceSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = CatalogSource
        fields = (
            "id",
            "url",
            "entry_count",
            "last_report",
            "last_attempt_at",
            "last_success_at",
            "failing_since",
            "last_error",
            "state",
        )
        read_only_fields = fields

    def get_state(self, obj) -> str:
        return obj.state()


class PackageSerializer(serializers.Serializer):
    """One of offspot-config's own app or files packages."""

    ident = serializers.CharField()
    kind = serializers.CharField(help_text="app or files")
    title = serializers.CharField()
    description = serializers.CharField()
    languages = serializers.ListField(child=serializers.CharField())
    tags = serializers.ListField(child=serializers.CharField())
    size = serializers.IntegerField()
    icon_url = serializers.CharField()
