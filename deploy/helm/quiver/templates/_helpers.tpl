{{/* The release's base name: <release>-quiver, or the release name when it contains "quiver". */}}
{{- define "quiver.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every resource; call with (dict "ctx" $ "component" "serve"). */}}
{{- define "quiver.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: quiver
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "quiver.selectorLabels" . }}
{{- end -}}

{{/* Labels that select a component's pods; call with (dict "ctx" $ "component" "serve"). */}}
{{- define "quiver.selectorLabels" -}}
app.kubernetes.io/name: {{ default .ctx.Chart.Name .ctx.Values.nameOverride }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image of a binary; call with (dict "ctx" $ "binary" "serve"). */}}
{{- define "quiver.image" -}}
{{ .ctx.Values.image.registry }}/{{ .binary }}:{{ .ctx.Values.image.tag | default .ctx.Chart.AppVersion }}
{{- end -}}

{{- define "quiver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "quiver.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A CronJob's name, refused past the 52 characters Kubernetes allows (its Jobs add 11). */}}
{{- define "quiver.cronJobName" -}}
{{- if gt (len .) 52 -}}
{{- fail (printf "CronJob name %q has %d characters, Kubernetes allows 52: shorten the release name, fullnameOverride or the dataset's name" . (len .)) -}}
{{- end -}}
{{- . -}}
{{- end -}}

{{- define "quiver.definitionsConfigMap" -}}
{{- .Values.definitions.existingConfigMap | default (printf "%s-definitions" (include "quiver.fullname" .)) -}}
{{- end -}}

{{/* The --offline URL: the values' or the shared volume's file store. */}}
{{- define "quiver.offlineURL" -}}
{{- $url := .Values.offline.url -}}
{{- if and $url (not (hasPrefix "s3://" $url)) -}}
{{- fail (printf "offline.url %q: want s3://bucket/prefix, or empty for the shared volume of offline.persistence (a file:// path would be on no volume every pod shares)" $url) -}}
{{- end -}}
{{- $url | default "file:///quiver/offline" -}}
{{- end -}}

{{/* The flags every binary takes (internal/cli.AddCommon). */}}
{{- define "quiver.commonArgs" -}}
- --definitions=/etc/quiver/definitions
- --brokers={{ required "kafka.brokers is required" .Values.kafka.brokers }}
- --topic-prefix={{ .Values.kafka.topicPrefix }}
- --data-dir=/quiver/data
- --offline={{ include "quiver.offlineURL" . }}
{{- if not (has .Values.online.store (list "pebble" "redis")) }}
{{- fail (printf "online.store %q: want pebble or redis" .Values.online.store) }}
{{- end }}
- --online={{ .Values.online.store }}
{{- if eq .Values.online.store "redis" }}
- --redis-addr={{ required "online.redis.addr is required with online.store redis" .Values.online.redis.addr }}
{{- with .Values.online.redis.sentinelMaster }}
- --redis-sentinel-master={{ . }}
{{- end }}
{{- include "quiver.tlsArgs" (dict "name" "redis" "tls" .Values.online.redis.tls) }}
{{- end }}
{{- include "quiver.tlsArgs" (dict "name" "kafka" "tls" .Values.kafka.tls) }}
{{- with .Values.kafka.sasl.mechanism }}
{{- if not (has (lower .) (list "plain" "scram-sha-256" "scram-sha-512")) }}
{{- fail (printf "kafka.sasl.mechanism %q: want plain, scram-sha-256 or scram-sha-512" .) }}
{{- end }}
- --kafka-sasl={{ . }}
{{- end }}
- --log-format={{ .Values.logFormat }}
{{- end -}}

{{/* The TLS flags of kafka or redis; call with (dict "name" <name> "tls" <its values>). */}}
{{- define "quiver.tlsArgs" -}}
{{- with .tls.caSecret }}
- --{{ $.name }}-tls-ca-file=/etc/quiver/{{ $.name }}-tls/ca.crt
{{- end }}
{{- with .tls.clientSecret }}
- --{{ $.name }}-tls-cert-file=/etc/quiver/{{ $.name }}-tls/tls.crt
- --{{ $.name }}-tls-key-file=/etc/quiver/{{ $.name }}-tls/tls.key
{{- end }}
{{- if and .tls.enabled (not (or .tls.caSecret .tls.clientSecret)) }}
- --{{ .name }}-tls
{{- end }}
{{- end -}}

{{/* The volume of the TLS Secrets of kafka or redis, if any; call as quiver.tlsArgs. */}}
{{- define "quiver.tlsVolume" -}}
{{- if or .tls.caSecret .tls.clientSecret }}
- name: {{ .name }}-tls
  projected:
    sources:
      {{- with .tls.caSecret }}
      - secret:
          name: {{ . }}
          items:
            - {key: ca.crt, path: ca.crt}
      {{- end }}
      {{- with .tls.clientSecret }}
      - secret:
          name: {{ . }}
          items:
            - {key: tls.crt, path: tls.crt}
            - {key: tls.key, path: tls.key}
      {{- end }}
{{- end }}
{{- end -}}

{{/* The credentials of Kafka and Redis, from their Secrets. */}}
{{- define "quiver.credentialsEnv" -}}
{{- if .Values.kafka.sasl.mechanism }}
{{- $secret := required "kafka.sasl.secret is required with kafka.sasl.mechanism" .Values.kafka.sasl.secret }}
- name: QUIVER_KAFKA_SASL_USER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: username
- name: QUIVER_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: password
{{- end }}
{{- if eq .Values.online.store "redis" }}
{{- with .Values.online.redis.authSecret }}
- name: QUIVER_REDIS_USER
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
      optional: true
- name: QUIVER_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- if $.Values.online.redis.sentinelMaster }}
      # Sentinels may have a password in front of a Redis without one.
      optional: true
- name: QUIVER_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: sentinelPassword
      optional: true
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment of every container that reads the offline store. */}}
{{- define "quiver.objectStoreEnv" -}}
{{- with .Values.offline.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.offline.s3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* A container's environment: the object store's, the credentials and extra; call with (dict "ctx" $ "extra" <list>). */}}
{{- define "quiver.env" -}}
{{- include "quiver.objectStoreEnv" .ctx }}
{{- include "quiver.credentialsEnv" .ctx }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "quiver.objectStoreEnvFrom" -}}
{{- with .Values.offline.s3.credentialsSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{/* Volume mounts of every Quiver container. */}}
{{- define "quiver.volumeMounts" -}}
- name: definitions
  mountPath: /etc/quiver/definitions
  readOnly: true
- name: data
  mountPath: /quiver/data
- name: tmp
  mountPath: /tmp
{{- if not .Values.offline.url }}
- name: offline
  mountPath: /quiver/offline
{{- end }}
{{- range $name, $tls := dict "kafka" .Values.kafka.tls "redis" (ternary .Values.online.redis.tls (dict) (eq .Values.online.store "redis")) }}
{{- if or $tls.caSecret $tls.clientSecret }}
- name: {{ $name }}-tls
  mountPath: /etc/quiver/{{ $name }}-tls
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* A volume source of the values: one that names another source than
emptyDir replaces the default emptyDir, which helm's merge of the values
keeps beside it (and the API server would refuse a volume of two sources). */}}
{{- define "quiver.volumeSource" -}}
{{- $other := omit . "emptyDir" -}}
{{- toYaml (empty $other | ternary . $other) -}}
{{- end -}}

{{/* Volumes behind quiver.volumeMounts; call with (dict "ctx" $ "data" <volume source>),
and "tmp" <volume source> for a /tmp other than an emptyDir of no set size; a
nil data is a StatefulSet's claim. */}}
{{- define "quiver.volumes" -}}
- name: definitions
  configMap:
    name: {{ include "quiver.definitionsConfigMap" .ctx }}
{{- with .data }}
- name: data
  {{- include "quiver.volumeSource" . | nindent 2 }}
{{- end }}
- name: tmp
  {{- include "quiver.volumeSource" (.tmp | default (dict "emptyDir" dict)) | nindent 2 }}
{{- if not .ctx.Values.offline.url }}
- name: offline
  persistentVolumeClaim:
    claimName: {{ .ctx.Values.offline.persistence.existingClaim | default (printf "%s-offline" (include "quiver.fullname" .ctx)) }}
{{- end }}
{{- include "quiver.tlsVolume" (dict "name" "kafka" "tls" .ctx.Values.kafka.tls) }}
{{- if eq .ctx.Values.online.store "redis" }}
{{- include "quiver.tlsVolume" (dict "name" "redis" "tls" .ctx.Values.online.redis.tls) }}
{{- end }}
{{- end -}}

{{/* Pod-spec fields every workload shares. */}}
{{- define "quiver.podCommon" -}}
serviceAccountName: {{ include "quiver.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling fields of a component's values. */}}
{{- define "quiver.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The scheduling of a component's replicas: as its values say, spread
across nodes by default; call with (dict "ctx" $ "component" <name>). */}}
{{- define "quiver.replicaScheduling" -}}
{{- $v := index .ctx.Values .component }}
{{- include "quiver.scheduling" $v }}
{{- if not $v.topologySpreadConstraints }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "quiver.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* A checksum of the definitions, so that pods restart when they change. */}}
{{- define "quiver.definitionsChecksum" -}}
checksum/definitions: {{ .Values.definitions | toJson | sha256sum }}
{{- end -}}

{{/* "true" when a model repository is configured (serve.models), for serve
and ingest's drift detectors; empty otherwise. */}}
{{- define "quiver.models" -}}
{{- $m := .Values.serve.models -}}
{{- if and $m.volume $m.objectStore.url -}}
{{- fail "serve.models: set volume or objectStore.url, not both" -}}
{{- end -}}
{{- if or $m.volume $m.objectStore.url }}true{{ end -}}
{{- end -}}

{{/* "true" when ingest runs the drift detectors: models configured, serve
logging predictions, and ingest.drift.enabled; empty otherwise. */}}
{{- define "quiver.drift" -}}
{{- if and (include "quiver.models" .) .Values.serve.predictionLog .Values.ingest.drift.enabled }}true{{ end -}}
{{- end -}}

{{/* The models volume of a pod: serve.models.volume, or an emptyDir the
sync containers fill from the object store. */}}
{{- define "quiver.modelsVolume" -}}
- name: models
{{- with .Values.serve.models.volume }}
  {{- toYaml . | nindent 2 }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* The container copying the models from the object store; call with
(dict "ctx" $ "once" bool): once, or every interval. */}}
{{- define "quiver.modelsSync" -}}
{{- $m := .ctx.Values.serve.models.objectStore -}}
image: {{ $m.image }}
imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
command: [/bin/sh, -c]
args:
  {{- if .once }}
  - exec aws s3 sync --delete --only-show-errors "$MODELS_URL" /quiver/models
  {{- else }}
  # The shell is the container's PID 1, which ignores SIGTERM unless it
  # traps it: without the trap the pod would wait its whole grace period.
  - trap 'exit 0' TERM; while :; do sleep "$INTERVAL" & wait $!; aws s3 sync --delete --only-show-errors "$MODELS_URL" /quiver/models; done
  {{- end }}
env:
  - name: MODELS_URL
    value: {{ $m.url | quote }}
  - name: INTERVAL
    value: {{ $m.interval | quote }}
  - name: HOME
    value: /tmp
  {{- include "quiver.objectStoreEnv" .ctx | trim | nindent 2 }}
{{- with (include "quiver.objectStoreEnvFrom" .ctx | trim) }}
envFrom:
  {{- . | nindent 2 }}
{{- end }}
resources:
  {{- toYaml $m.resources | nindent 2 }}
securityContext:
  {{- toYaml .ctx.Values.securityContext | nindent 2 }}
volumeMounts:
  - name: models
    mountPath: /quiver/models
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* A component's PodDisruptionBudget, if its values enable one; call with (dict "ctx" $ "component" <name>). */}}
{{- define "quiver.pdb" -}}
{{- $pdb := (index .ctx.Values .component).podDisruptionBudget }}
{{- if $pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "quiver.fullname" .ctx }}-{{ .component }}
  labels:
    {{- include "quiver.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "quiver.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
