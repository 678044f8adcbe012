{{- /*
Pieces the per-resource templates share: value checks, metadata, environment, security
contexts, image reference. Templates that take a dict expect dict "root" $ "service" "<name>".
*/ -}}

{{- /* Refuses combinations that would start but misbehave, with a message that says why. */ -}}
{{- define "platform-lib.checkValues" -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- $drain := add (int .Values.gunicorn.gracefulTimeoutSeconds) (int .Values.preStopSleepSeconds) -}}
{{- if le $grace $drain -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be longer than gunicorn.gracefulTimeoutSeconds + preStopSleepSeconds (%d), or requests in flight are cut off at shutdown" .Chart.Name $grace $drain) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d)" .Chart.Name (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.meta" -}}
name: {{ include "platform-lib.fullname" . }}
namespace: {{ include "platform-lib.namespace" (dict "root" .root "component" .service) }}
labels:
  {{- include "platform-lib.labels" (dict "root" .root "name" .service) | nindent 2 }}
{{- end -}}

{{- /*
A value as an environment variable. YAML numbers reach templates as float64, which would print
20971520 as "2.097152e+07" and fail the service's integer setting; whole numbers print as integers.
*/ -}}
{{- define "platform-lib.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . | toString | quote -}}
{{- else -}}
{{- . | toString | quote -}}
{{- end -}}
{{- end -}}

{{- /*
Rolls the pods when a Secret they use changes: the Secret names, plus the content of each
existingSecret as the cluster holds it at upgrade time (generated secrets never change).
*/ -}}
{{- define "platform-lib.secretChecksum" -}}
{{- $root := .root -}}
{{- $namespace := include "platform-lib.namespace" (dict "root" $root "component" .service) -}}
{{- $existing := list $root.Values.database.existingSecret -}}
{{- $names := list (include "platform-lib.databaseSecretName" (dict "root" $root "service" .service "database" $root.Values.database)) -}}
{{- if eq .service "auth" -}}
{{- $names = append $names (include "platform-lib.signingKeySecretName" $root) -}}
{{- $existing = append $existing $root.Values.global.jwt.existingSecret -}}
{{- end -}}
{{- if eq .service "images" -}}
{{- $name := include "platform-lib.objectStorageSecretName" (dict "root" $root "objectStorage" $root.Values.objectStorage) -}}
{{- $names = append $names $name -}}
{{- $existing = append $existing (ternary $root.Values.objectStorage.existingSecret $name (not (empty (include "platform-lib.bundledObjectStorage" $root)))) -}}
{{- end -}}
{{- $content := list -}}
{{- range $name := compact $existing -}}
{{- $content = append $content ((lookup "v1" "Secret" $namespace $name).data | default dict | toJson) -}}
{{- end -}}
{{- printf "%s|%s" (join "," $names) (join "," $content) | sha256sum -}}
{{- end -}}

{{- define "platform-lib.env" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $database := $values.database -}}
- name: DB_USER
  value: {{ $database.user | quote }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "platform-lib.databaseSecretName" (dict "root" $root "service" .service "database" $database) }}
      key: {{ $database.existingSecretPasswordKey }}
# Kubernetes expands $(DB_USER) and $(DB_PASSWORD) from the two variables above, so the password
# stays in its Secret. Passwords must be URL-safe (generated ones are alphanumeric).
- name: DATABASE_URL
  value: {{ printf "postgresql+psycopg2://$(DB_USER):$(DB_PASSWORD)@%s:%s/%s%s"
              (include "platform-lib.databaseHost" $root) (include "platform-lib.databasePort" $root) $database.name
              (include "platform-lib.databaseUrlQuery" $root) | quote }}
{{- if include "platform-lib.databaseSystemCa" $root }}
# sslrootcert=system makes libpq load OpenSSL's default trust store, which for the OpenSSL
# bundled with psycopg2-binary is a build directory that does not exist: point it at the
# image's CA bundle instead.
- name: SSL_CERT_FILE
  value: {{ $root.Values.global.externalDatabase.systemCaFile | quote }}
{{- end }}
{{- /* Without keys the AWS SDK takes its default credential chain (a cloud identity). */}}
{{- if and (eq .service "images") (not $values.objectStorage.useDefaultCredentials) }}
{{- $s3Secret := include "platform-lib.objectStorageSecretName" (dict "root" $root "objectStorage" $values.objectStorage) }}
- name: S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: access-key-id
- name: S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: secret-access-key
{{- end }}
{{- end -}}

{{- /*
The token signing key: auth's main container alone gets it (not its migrate init container, no
other service). JWT_ADDITIONAL_KEYS is optional in the Secret: the keys published besides the
signing one during a rotation (charts/platform/README.md, "Rotating the token signing key").
*/ -}}
{{- define "platform-lib.signingKeyEnv" -}}
{{- $jwt := .Values.global.jwt -}}
- name: JWT_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "platform-lib.signingKeySecretName" . }}
      key: {{ $jwt.existingSecretKey }}
- name: JWT_ADDITIONAL_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "platform-lib.signingKeySecretName" . }}
      key: {{ $jwt.additionalKeysKey }}
      optional: true
{{- end -}}

{{- /*
Query of the DATABASE_URL for an external PostgreSQL: ?sslmode=<sslMode>, plus sslrootcert, the
CA libpq checks the server certificate against with verify-ca/verify-full: the mounted
global.externalDatabase.caSecret, or else (verify-full only) the system's trust store.
The bundled PostgreSQL is reached inside the cluster, without TLS: no query.
*/ -}}
{{- define "platform-lib.databaseUrlQuery" -}}
{{- $db := .Values.global.externalDatabase -}}
{{- if and (not (include "platform-lib.bundledDatabase" .)) $db.sslMode -}}
{{- printf "?sslmode=%s" $db.sslMode -}}
{{- if $db.caSecret -}}
{{- printf "&sslrootcert=%s/%s" (include "platform-lib.databaseCaDir" .) $db.caKey -}}
{{- else if include "platform-lib.databaseSystemCa" . -}}
&sslrootcert=system
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.databaseCaDir" -}}/etc/platform/database-ca{{- end -}}

{{- /* "true" when the external database's certificate is checked against a mounted CA Secret. */ -}}
{{- define "platform-lib.databaseCaMounted" -}}
{{- if and (not (include "platform-lib.bundledDatabase" .)) .Values.global.externalDatabase.sslMode .Values.global.externalDatabase.caSecret -}}true{{- end -}}
{{- end -}}

{{- /*
"true" when libpq checks the external database's certificate against the system's trust store
(sslrootcert=system, libpq 16+; psycopg2-binary bundles libpq 17). libpq refuses
sslrootcert=system with verify-ca, so verify-ca needs a caSecret (checked).
*/ -}}
{{- define "platform-lib.databaseSystemCa" -}}
{{- $db := .Values.global.externalDatabase -}}
{{- if and (not (include "platform-lib.bundledDatabase" .)) (not $db.caSecret) (has $db.sslMode (list "verify-ca" "verify-full")) -}}
{{- if eq $db.sslMode "verify-ca" -}}
{{- fail "global.externalDatabase.sslMode verify-ca needs global.externalDatabase.caSecret (the CA that signed the server certificate): libpq refuses verify-ca with the system's trust store (sslrootcert=system); use verify-full to trust the system's CAs" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- /* The read-only mount of the external database's CA, for every container that connects. */ -}}
{{- define "platform-lib.databaseCaVolumeMount" -}}
{{- if include "platform-lib.databaseCaMounted" . -}}
- name: database-ca
  mountPath: {{ include "platform-lib.databaseCaDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "platform-lib.databaseCaVolume" -}}
{{- if include "platform-lib.databaseCaMounted" . -}}
# The CA that signed the external PostgreSQL's certificate (sslrootcert in DATABASE_URL).
- name: database-ca
  secret:
    secretName: {{ .Values.global.externalDatabase.caSecret }}
    items:
      - key: {{ .Values.global.externalDatabase.caKey }}
        path: {{ .Values.global.externalDatabase.caKey }}
{{- end }}
{{- end -}}

{{- /*
The ids a pod runs as: <service>.securityContext in a service subchart, securityContext in the
umbrella. A field set to null is gone from the values and left out (OpenShift assigns it).
Takes the chart's root context or dict "root" $ ...
*/ -}}
{{- define "platform-lib.securityContextIds" -}}
{{- $root := .root | default . -}}
{{- $ids := $root.Values.securityContext | default dict -}}
{{- range $field := .fields -}}
{{- with index $ids $field }}
{{ $field }}: {{ int64 . }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
{{- include "platform-lib.securityContextIds" (dict "root" (.root | default .) "fields" (list "runAsUser" "runAsGroup")) }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "platform-lib.podSecurityContext" -}}
runAsNonRoot: true
{{- include "platform-lib.securityContextIds" (dict "root" (.root | default .) "fields" (list "runAsUser" "runAsGroup" "fsGroup")) }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "platform-lib.image" -}}
{{- $image := .Values.image -}}
{{- $registry := $image.registry | default .Values.global.image.registry -}}
{{- $tag := $image.tag | default .Values.global.image.tag | default .Chart.AppVersion -}}
{{- if $image.digest -}}
{{- printf "%s/%s@%s" $registry $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry $image.repository $tag -}}
{{- end -}}
{{- end -}}
