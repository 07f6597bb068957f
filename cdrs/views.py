from django.http import HttpResponse
from django.views import View


class CdrListView(View):
    def get(self, request):  # placeholder until the API lands
        return HttpResponse(status=501)


class CdrGetView(CdrListView):
    pass
