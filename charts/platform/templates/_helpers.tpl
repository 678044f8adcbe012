{{- /* Names and lists the umbrella's templates share; the per-service ones are in platform-lib. */ -}}

{{- /* The enabled services, in a fixed order, as a JSON list (fromJsonArray to use it). */ -}}
{{- define "platform.services" -}}
{{- $enabled := list -}}
{{- range $service := list "auth" "api" "images" -}}
{{- if (index $.Values $service).enabled -}}
{{- $enabled = append $enabled $service -}}
{{- end -}}
{{- end -}}
{{- toJson $enabled -}}
{{- end -}}

{{- define "platform.namespace" -}}
{{- include "platform-lib.namespace" (dict "root" .root "component" .component) -}}
{{- end -}}

{{- /* The namespaces holding platform pods, each once (JSON list). */ -}}
{{- define "platform.workloadNamespaces" -}}
{{- $namespaces := list -}}
{{- range $service := include "platform.services" . | fromJsonArray -}}
{{- $namespaces = append $namespaces (include "platform.namespace" (dict "root" $ "component" $service)) -}}
{{- end -}}
{{- /* The backup, replication and restore pods run there too, beside PostgreSQL and MinIO. */ -}}
{{- if or .Values.postgresql.enabled .Values.minio.enabled .Values.backup.enabled -}}
{{- $namespaces = append $namespaces (include "platform.namespace" (dict "root" $ "component" "infrastructure")) -}}
{{- end -}}
{{- $namespaces | uniq | toJson -}}
{{- end -}}

{{- define "platform.labels" -}}
{{- include "platform-lib.labels" (dict "root" .root "name" (.name | default "platform") "component" .component) -}}
{{- end -}}

{{- /* A NetworkPolicy peer: the pods labelled `labels` in namespace `namespace`. */ -}}
{{- define "platform.peer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    {{- if .labels }}
    matchLabels:
      {{- toYaml .labels | nindent 6 }}
    {{- else }}
    {}
    {{- end }}
{{- end -}}

{{- /*
Labels of every pod of a service of this release, for the network policies: the component
label, which the service's Deployment pods and the images reconcile CronJob's pods share (their
app.kubernetes.io/name differs, so the Service, HPA and PDB select only the Deployment's).
*/ -}}
{{- define "platform.servicePodLabels" -}}
app.kubernetes.io/component: {{ .service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- /* Labels of the Bitnami charts' pods (their common.labels.matchLabels). */ -}}
{{- define "platform.bitnamiPodLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- /*
"true" when this render reads the cluster: `helm install`/`upgrade` and `--dry-run=server`.
`helm template`, `--dry-run=client` and GitOps tools that render with `helm template` (Argo CD)
get an empty answer from every lookup. kube-system exists in every cluster, and before anything
of this release does: Helm renders before it creates the namespace of --create-namespace, so the
release namespace is not proof. Reading it needs `get` on namespaces; a lookup Helm is refused
fails the render rather than passing for "no cluster".
*/ -}}
{{- define "platform.clusterVisible" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" -}}true{{- end -}}
{{- end -}}

{{- /*
The rule every generated secret value follows (platform.keptValue):
a new value only when the render can see the cluster, where lookup has just shown there is none
to keep. A render without the cluster would make a new value on every run, which no longer
matches the one PostgreSQL, MinIO or the tokens were created with: it fails and names the
existingSecret value to set instead, unless global.secrets.allowGeneratedWithoutCluster says
the install is throwaway. Renders nothing.
dict "root" $ "name" <Secret> "value" <the existingSecret value that replaces it>
*/ -}}
{{- define "platform.generatedSecretAllowed" -}}
{{- if not (or (include "platform.clusterVisible" .root) ((.root.Values.global.secrets | default dict).allowGeneratedWithoutCluster)) -}}
{{- fail (printf "Secret %s would be generated without access to the cluster (helm template, --dry-run=client, Argo CD), so with a new random value on every render that no longer matches the running one: set %s to a Secret you create (chart README, \"Secrets with GitOps\"), or install with helm install/upgrade; for a throwaway development install only, set global.secrets.allowGeneratedWithoutCluster=true" .name .value) -}}
{{- end -}}
{{- end -}}

{{- /* Backups (backup-cronjob.yaml and its neighbours): Secret names, the existingSecret first. */ -}}
{{- define "platform.backupDatabaseSecretName" -}}
{{- .Values.backup.database.existingSecret | default (printf "%s-backup-database" .Release.Name) -}}
{{- end -}}

{{- define "platform.backupS3SecretName" -}}
{{- .Values.backup.s3.existingSecret | default (printf "%s-backup-s3" .Release.Name) -}}
{{- end -}}

{{- define "platform.replicationSourceSecretName" -}}
{{- .Values.backup.replication.sourceExistingSecret | default (printf "%s-images-readonly" .Release.Name) -}}
{{- end -}}

{{- /* "true" when the images replication CronJob runs: it copies the images service's bucket. */ -}}
{{- define "platform.replicationEnabled" -}}
{{- if and .Values.backup.enabled .Values.backup.replication.enabled .Values.images.enabled -}}true{{- end -}}
{{- end -}}

{{- /* The backup bucket's endpoint: backup.s3.endpoint, else the bundled MinIO. */ -}}
{{- define "platform.backupS3Endpoint" -}}
{{- if .Values.backup.s3.endpoint -}}
{{- .Values.backup.s3.endpoint -}}
{{- else -}}
{{- printf "http://%s.%s.svc.%s:9000" (include "platform-lib.minioFullname" .) (include "platform.namespace" (dict "root" . "component" "infrastructure")) .Values.global.clusterDomain -}}
{{- end -}}
{{- end -}}

{{- /*
The images service's image, for the backup, replication and restore pods: src/backups ships in
it (with psycopg2 and boto3). The images subchart's values, read from the umbrella.
*/ -}}
{{- define "platform.backupImage" -}}
{{- $image := .Values.images.image -}}
{{- $registry := $image.registry | default .Values.global.image.registry -}}
{{- $tag := $image.tag | default .Values.global.image.tag | default .Chart.AppVersion -}}
{{- if $image.digest -}}
{{- printf "%s/%s@%s" $registry $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- /* libpq's variables for the backup and restore pods (PGSSLMODE, PGSSLROOTCERT as the services'). */ -}}
{{- define "platform.backupPgEnv" -}}
{{- $db := .Values.global.externalDatabase -}}
- name: PGHOST
  value: {{ include "platform-lib.databaseHost" . | quote }}
- name: PGPORT
  value: {{ include "platform-lib.databasePort" . | quote }}
{{- if and (not (include "platform-lib.bundledDatabase" .)) $db.sslMode }}
- name: PGSSLMODE
  value: {{ $db.sslMode | quote }}
{{- if $db.caSecret }}
- name: PGSSLROOTCERT
  value: {{ printf "%s/%s" (include "platform-lib.databaseCaDir" .) $db.caKey | quote }}
{{- else if include "platform-lib.databaseSystemCa" . }}
- name: PGSSLROOTCERT
  value: system
- name: SSL_CERT_FILE
  value: {{ $db.systemCaFile | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* The backup bucket and its user's keys (backup and restore pods). */ -}}
{{- define "platform.backupS3Env" -}}
- name: BACKUP_S3_ENDPOINT
  value: {{ include "platform.backupS3Endpoint" . | quote }}
- name: BACKUP_S3_REGION
  value: {{ .Values.backup.s3.region | quote }}
- name: BACKUP_S3_BUCKET
  value: {{ .Values.backup.s3.bucket | quote }}
- name: BACKUP_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "platform.backupS3SecretName" . }}
      key: access-key-id
- name: BACKUP_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "platform.backupS3SecretName" . }}
      key: secret-access-key
{{- end -}}

{{- /* The pod-level parts every backup pod shares: dict "root" $ "labels" <labels> */ -}}
{{- define "platform.backupPodSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "platform-lib.podSecurityContext" .root | nindent 2 }}
{{- with .root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "platform.imagesBucket" -}}
{{- ternary .Values.global.objectStorage.bucket .Values.global.externalObjectStorage.bucket (not (empty (include "platform-lib.bundledObjectStorage" .))) -}}
{{- end -}}

{{- /* A restore container, without its name and command: dict "root" $ "env" <env list> */ -}}
{{- define "platform.restoreContainer" -}}
image: {{ include "platform.backupImage" .root }}
imagePullPolicy: {{ .root.Values.global.image.pullPolicy }}
env:
  {{- .env | nindent 2 }}
securityContext:
  {{- include "platform-lib.containerSecurityContext" .root | nindent 2 }}
resources:
  {{- toYaml .root.Values.restore.resources | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- include "platform-lib.databaseCaVolumeMount" .root | nindent 2 }}
{{- end -}}

{{- /*
The restore's environment: the admin connection (the bundled superuser, or restore.adminSecret's
URL), the service roles' passwords (optional: with an external PostgreSQL the roles are yours and
their Secrets live in the services' namespaces), the backup bucket, the images bucket and, with a
replication, the replica.
dict "root" $ "images" <images.database> "imagesS3Secret" <name>
*/ -}}
{{- define "platform.restoreEnv" -}}
{{- $root := .root -}}
{{- include "platform.backupPgEnv" $root }}
{{- if $root.Values.postgresql.enabled }}
- name: PGUSER
  value: postgres
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ tpl $root.Values.postgresql.auth.existingSecret $root }}
      key: postgres-password
{{- else }}
- name: RESTORE_ADMIN_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.restore.adminSecret }}
      key: url
{{- end }}
{{- range $service := list "auth" "api" "images" }}
{{- $database := (index $root.Values $service).database | default (dict "existingSecret" "" "existingSecretPasswordKey" "password") }}
- name: {{ upper $service }}_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "platform-lib.databaseSecretName" (dict "root" $root "service" $service "database" $database) }}
      key: {{ $database.existingSecretPasswordKey }}
      optional: true
{{- end }}
- name: IMAGES_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://%s:$(IMAGES_DB_PASSWORD)@%s:%s/%s%s" .images.user (include "platform-lib.databaseHost" $root) (include "platform-lib.databasePort" $root) .images.name (include "platform-lib.databaseUrlQuery" $root) | quote }}
{{ include "platform.backupS3Env" $root }}
- name: IMAGES_S3_ENDPOINT
  value: {{ include "platform-lib.objectStorageEndpoint" $root | quote }}
- name: IMAGES_S3_BUCKET
  value: {{ include "platform.imagesBucket" $root | quote }}
{{- with .imagesS3Secret }}
- name: IMAGES_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: access-key-id
- name: IMAGES_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: secret-access-key
{{- end }}
{{- if include "platform.replicationEnabled" $root }}
{{- $replication := $root.Values.backup.replication }}
- name: REPLICA_S3_ENDPOINT
  value: {{ $replication.endpoint | quote }}
- name: REPLICA_S3_BUCKET
  value: {{ $replication.bucket | quote }}
- name: REPLICA_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $replication.existingSecret }}
      key: access-key-id
- name: REPLICA_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $replication.existingSecret }}
      key: secret-access-key
{{- end }}
{{- end -}}
