{{- /*
The service's Deployment. Call with the subchart's root context; it also runs the value
checks (platform-lib.checkValues), once per subchart.
*/ -}}
{{- define "platform-lib.deployment" -}}
{{- include "platform-lib.checkValues" . -}}
{{- $root := . -}}
{{- $service := .Chart.Name -}}
{{- $ctx := dict "root" $root "service" $service -}}
{{- $values := $root.Values -}}
{{- $selector := include "platform-lib.selectorLabels" (dict "root" $root "name" $service) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "platform-lib.meta" $ctx | nindent 2 }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "platform-lib.labels" (dict "root" $root "name" $service) | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "platform-lib.configmap" $root | sha256sum }}
        checksum/secret: {{ include "platform-lib.secretChecksum" $ctx }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "platform-lib.fullname" $ctx }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "platform-lib.podSecurityContext" $ctx | nindent 8 }}
      # Longer than the preStop pause plus gunicorn's graceful timeout (checked at render).
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- with $values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ $values.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
        {{- if $values.topologySpread.zones }}
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $values.migrations.enabled }}
      # Schema migrations before the service starts. Several pods may start at once: the
      # migrate command holds a PostgreSQL advisory lock, so one applies each revision and the
      # others find nothing left to do. Until the database answers, the kubelet retries it.
      initContainers:
        - name: migrate
          image: {{ include "platform-lib.image" $root }}
          imagePullPolicy: {{ $values.global.image.pullPolicy }}
          command: ["platform-migrate", {{ $service | quote }}]
          envFrom:
            - configMapRef:
                name: {{ include "platform-lib.fullname" $ctx }}
          env:
            {{- include "platform-lib.env" $ctx | nindent 12 }}
          securityContext:
            {{- include "platform-lib.containerSecurityContext" $ctx | nindent 12 }}
          resources:
            {{- toYaml $values.migrations.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "platform-lib.databaseCaVolumeMount" $root | nindent 12 }}
      {{- end }}
      containers:
        - name: {{ $service }}
          image: {{ include "platform-lib.image" $root }}
          imagePullPolicy: {{ $values.global.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ include "platform-lib.port" $service }}
              protocol: TCP
            # Prometheus only (the NetworkPolicy admits nothing else); no route names it.
            - name: metrics
              containerPort: {{ include "platform-lib.metricsPort" $service }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "platform-lib.fullname" $ctx }}
          env:
            {{- include "platform-lib.env" $ctx | nindent 12 }}
            {{- if eq $service "auth" }}
            {{- include "platform-lib.signingKeyEnv" $root | nindent 12 }}
            {{- end }}
          # /live does no I/O: a slow database makes a pod unready, never restarts it.
          startupProbe:
            httpGet:
              path: /live
              port: http
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: {{ $values.probes.startupFailureThreshold }}
          livenessProbe:
            httpGet:
              path: /live
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /ready
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          lifecycle:
            # Endpoints are removed asynchronously; keep serving until every proxy has noticed.
            preStop:
              sleep:
                seconds: {{ $values.preStopSleepSeconds }}
          securityContext:
            {{- include "platform-lib.containerSecurityContext" $ctx | nindent 12 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "platform-lib.databaseCaVolumeMount" $root | nindent 12 }}
      volumes:
        # gunicorn's worker heartbeat files, prometheus multiprocess files and spooled uploads.
        - name: tmp
          emptyDir:
            sizeLimit: {{ $values.tmpSizeLimit }}
        {{- include "platform-lib.databaseCaVolume" $root | nindent 8 }}
{{- end -}}
